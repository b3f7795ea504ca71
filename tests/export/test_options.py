"""Build options that are wrong whatever the model is: refused with a one-line usage error."""
import pytest

from deploy.errors import UsageError
from export.options import MAX_BATCH, MAX_NUM_CLASSES, MAX_SIZE, check_shape_options
from tests.export.test_build import options


@pytest.mark.parametrize("change, message", [
    (dict(size=0), "--size must be a number of pixels from 1 to"),
    (dict(size=MAX_SIZE + 1), "--size must be a number of pixels from 1 to {}, got {}".format(MAX_SIZE, MAX_SIZE + 1)),
    (dict(batch=0), "--batch must be from 1 to {}, got 0".format(MAX_BATCH)),
    (dict(batch=MAX_BATCH + 1), "--batch must be from 1 to {}, got {}".format(MAX_BATCH, MAX_BATCH + 1)),
    (dict(num_classes=0), "--num-classes must be from 1 to"),
    (dict(num_classes=MAX_NUM_CLASSES + 1), "--num-classes must be from 1 to {}".format(MAX_NUM_CLASSES)),
])
def test_bad_shape_options_are_usage_errors(tmp_path, change, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as info:
        check_shape_options(options(tmp_path, **change))
    assert info.value.exit_code == 2 and info.value.hint


def test_good_shape_options_pass(tmp_path):
    check_shape_options(options(tmp_path, size=MAX_SIZE, batch=MAX_BATCH, num_classes=MAX_NUM_CLASSES))
