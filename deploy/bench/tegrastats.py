"""tegrastats: parse its lines and sample board power in the background during a benchmark.

Board formats (one line per interval; only the power rails matter here):
  Jetson Nano, JetPack 4.x:      ... POM_5V_IN 1750/1628 POM_5V_GPU 0/0 POM_5V_CPU 366/406
  Xavier NX, JetPack 4.x:        ... VDD_IN 6140/5510 VDD_CPU_GPU_CV 2706/2119 VDD_SOC 1074/1051
  Xavier NX (JP5) / Orin (JP5/6): ... VDD_IN 5263mW/5263mW VDD_CPU_GPU_CV 717mW/717mW VDD_SOC 1794mW/1794mW
Each rail is ``instant/average`` in milliwatts (the "mW" suffix appeared with JetPack 5); the
average is over tegrastats' whole lifetime, so we keep the instant value and average it ourselves
over the benchmark window. The board's input power is ``POM_5V_IN`` on the Nano and ``VDD_IN``
on Xavier NX and Orin NX/Nano: it is the total (the other rails are parts of it, never to be
added). On boards that print neither (AGX Orin lists VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 ...)
we fall back to the sum of all rails and say so in the rail name.

Python 3.6-compatible; stdlib only.
"""
import collections
import logging
import re
import shutil
import subprocess
import threading
import time

LOG = logging.getLogger(__name__)

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
SUM_OF_RAILS = "sum of rails"

# NAME value[mW]/value[mW], followed by whitespace or the end of the line. Units other than mW
# (RAM 1923/3964MB, IRAM 0/252kB) do not match. Some Orin Nano builds print the average without
# its unit (VDD_CPU_GPU_CV 598mW/598): accepted.
_RAIL = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")

Rail = collections.namedtuple("Rail", ["instant_mw", "average_mw"])
PowerReading = collections.namedtuple("PowerReading", ["rail", "milliwatts", "rails"])
PowerSummary = collections.namedtuple(
    "PowerSummary", ["rail", "samples", "average_w", "min_w", "max_w", "duration_s", "interval_ms"])


def parse_rails(line):
    """{rail name: Rail(instant_mw, average_mw)} for every power rail on a tegrastats line."""
    rails = collections.OrderedDict()
    for match in _RAIL.finditer(line):
        rails[match.group(1)] = Rail(int(match.group(2)), int(match.group(3)))
    return rails


def parse_power(line):
    """The board input power on one line as a PowerReading, or None when the line has no rails."""
    rails = parse_rails(line)
    if not rails:
        return None
    for name in INPUT_RAILS:
        if name in rails:
            return PowerReading(name, rails[name].instant_mw, rails)
    return PowerReading(SUM_OF_RAILS, sum(r.instant_mw for r in rails.values()), rails)


def tegrastats_available(executable="tegrastats"):
    return shutil.which(executable) is not None


class TegrastatsSampler(object):
    """Run ``tegrastats --interval MS`` in the background and keep (time, PowerReading) samples.

        with TegrastatsSampler(interval_ms=100) as sampler:
            t0 = time.monotonic(); ...run...; t1 = time.monotonic()
        summary = sampler.summary(t0, t1)   # PowerSummary or None

    ``command`` replaces the tegrastats command line (tests feed recorded lines this way).
    Failing to start tegrastats is not an error: the benchmark goes on without power figures,
    and ``error`` says why.
    """

    def __init__(self, interval_ms=100, command=None):
        self.interval_ms = int(interval_ms)
        self.command = list(command) if command else ["tegrastats", "--interval", str(self.interval_ms)]
        self.samples = []  # type: list
        self.error = None  # type: object
        self._proc = None
        self._thread = None
        self._lock = threading.Lock()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False

    def start(self):
        try:
            self._proc = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                universal_newlines=True, bufsize=1)
        except OSError as exc:
            self.error = "could not start {}: {}".format(self.command[0], exc)
            LOG.warning("no power figures: %s", self.error)
            return
        self._thread = threading.Thread(target=self._read, name="tegrastats-reader")
        self._thread.daemon = True
        self._thread.start()

    def _read(self):
        for line in self._proc.stdout:
            reading = parse_power(line)
            if reading is not None:
                with self._lock:
                    self.samples.append((time.monotonic(), reading))

    def stop(self):
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def wait_for_samples(self, count=1, timeout_s=3.0):
        """Block until ``count`` samples arrived (True) or the timeout passed (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.samples) >= count:
                    return True
            time.sleep(0.01)
        return False

    def summary(self, start=None, end=None):
        """Average board power over samples taken in [start, end] (monotonic seconds), or None."""
        with self._lock:
            window = [(t, r) for t, r in self.samples
                      if (start is None or t >= start) and (end is None or t <= end)]
        return summarize_power([r for _, r in window], duration_s=(end - start) if start is not None and end is not None else None,
                               interval_ms=self.interval_ms)


def summarize_power(readings, duration_s=None, interval_ms=None):
    """PowerSummary over PowerReadings (all from the same board), or None when there are none."""
    readings = list(readings)
    if not readings:
        return None
    watts = [r.milliwatts / 1000.0 for r in readings]
    return PowerSummary(
        rail=readings[0].rail,
        samples=len(watts),
        average_w=sum(watts) / len(watts),
        min_w=min(watts),
        max_w=max(watts),
        duration_s=duration_s,
        interval_ms=interval_ms,
    )


def energy_per_inference_mj(average_w, seconds_per_inference):
    """Energy of one inference in millijoules: watts x seconds x 1000 (a serial loop's share)."""
    return float(average_w) * float(seconds_per_inference) * 1000.0
