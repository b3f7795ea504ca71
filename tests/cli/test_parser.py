"""cli/: every command module adds its parser; device-run parses its steps as pipeline.py does."""
import pytest

import pipeline
from cli import device_run
from cli.parser import make_parser


def _commands(parser):
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_pipeline_lists_every_command_once_in_order():
    assert _commands(pipeline.make_parser()) == [
        "build", "engines", "verify", "bench", "predict", "doctor", "device-run", "analyze", "targets", "models"]


@pytest.mark.parametrize("argv", [
    ["engines", "b", "--precision", "fp16"],
    ["bench", "b", "--backend", "tensorrt", "--precision", "fp16", "--iterations", "500"],
    ["verify", "b", "--images", "imgs"],
    ["-v", "-q", "bench", "b"],
])
def test_device_run_parses_its_steps_with_the_same_defaults(argv):
    ours = make_parser(device_run.STEP_COMMANDS).parse_args(argv)
    full = pipeline.make_parser().parse_args(argv)
    assert vars(ours) == vars(full)


def test_a_bad_option_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        pipeline.make_parser().parse_args(["bench", "--no-such-option"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "unrecognized arguments: --no-such-option" in err


@pytest.mark.parametrize("flag", ["-q", "--verbose"])
def test_a_global_option_after_the_command_says_where_it_goes(capsys, flag):
    with pytest.raises(SystemExit) as exc:
        pipeline.make_parser().parse_args(["build", flag])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: {}".format(flag) in err
    assert "(fix: {} is an option of pipeline.py itself: put it before the command".format(flag) in err
