"""tegrastats parsing on real lines from each board, and the background sampler.

Sources of the sample lines (public material found through the code/issue search indexes; the
lines are data, copied verbatim):
  NANO_JP461   Jetson Nano, JetPack 4.6.1: the unit test TestParseTegraStatsXavierNanoJetPack461 of a
               Go tegrastats Prometheus exporter (main_test.go).
  NANO_B       Jetson Nano (4 cores, two online): docstring "Example tegrastats output" of
               noFlowWater/edge-metrics-exporter, collectors/jetson_nano.py.
  NX_JP45      Xavier NX, JetPack 4.x (no "mW" units): TestParseTegraStatsXavierNXJetPack411 of the
               same Go exporter.
  NX_JP512     Xavier NX, JetPack 5.1.2 ("mW" units): TestParseTegraStatsXavierNXJetPack512, same file.
  ORIN_NANO    Jetson Orin Nano, JetPack 6: NanoExample constant of a Go tegra parser (tegra/nano.go).
  ORIN_NANO_B  Jetson Orin Nano: README "Tegrastats parser" sample; note the unit-less average in
               "VDD_CPU_GPU_CV 598mW/598", kept as printed.
  AGX_XAVIER   Jetson AGX Xavier, JetPack 4.2: https://github.com/martinkersner/gtop/pull/7 (comment of
               2019-06-17); rails without a VDD_IN total.
  TX2          Jetson TX2: sample output in the header comment of a tegrastats-to-CSV parser.
"""
import sys

import pytest

from deploy.bench import tegrastats as ts

NANO_JP461 = ("RAM 1923/3964MB (lfb 2x2MB) SWAP 191/1982MB (cached 6MB) IRAM 0/252kB(lfb 252kB) "
              "CPU [5%@1224,4%@1224,3%@1224,6%@1224] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 PLL@37C "
              "CPU@40C PMIC@50C GPU@40C AO@45C thermal@40C POM_5V_IN 1750/1628 POM_5V_GPU 0/0 POM_5V_CPU 366/406")
NANO_B = ("RAM 1409/3964MB (lfb 28x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
          "CPU [22%@518,67%@518,off,off] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 "
          "PLL@28.5C CPU@32C PMIC@50C GPU@30.5C AO@39.5C thermal@31.25C "
          "POM_5V_IN 2003/2003 POM_5V_GPU 0/0 POM_5V_CPU 320/320")
NX_JP45 = ("RAM 5246/7771MB (lfb 7x4MB) SWAP 983/20269MB (cached 280MB) CPU [47%@1420,23%@1420,32%@1420,"
           "22%@1420,31%@1420,96%@1420] EMC_FREQ 2%@1600 GR3D_FREQ 0%@1109 APE 150 MTS fg 1% bg 9% AO@29C "
           "GPU@31.5C PMIC@100C AUX@30C CPU@33.5C thermal@31.35C VDD_IN 6140/5510 VDD_CPU_GPU_CV 2706/2119 "
           "VDD_SOC 1074/1051")
NX_JP512 = ("07-09-2024 13:31:31 RAM 3168/6851MB (lfb 2x4MB) SWAP 161/3426MB (cached 0MB) CPU [23%@1397,"
            "17%@1192,16%@1190,13%@1190,23%@1190,10%@1190] EMC_FREQ 2%@204 GR3D_FREQ 0%@[114] VIC_FREQ 115 "
            "APE 150 AUX@45C CPU@46.5C thermal@45.6C AO@45C GPU@45.5C PMIC@50C VDD_IN 2763mW/2846mW "
            "VDD_CPU_GPU_CV 650mW/670mW VDD_SOC 650mW/711mW")
ORIN_NANO = ("05-05-2025 06:05:39 RAM 2639/7620MB (lfb 9x4MB) SWAP 0/3810MB (cached 0MB) "
             "CPU [1%@729,4%@729,8%@729,4%@729,5%@729,4%@729] GR3D_FREQ 0% cpu@44.156C soc2@43.781C "
             "soc0@44.687C gpu@45.968C tj@45.968C soc1@45.312C VDD_IN 5263mW/5263mW VDD_CPU_GPU_CV 717mW/717mW "
             "VDD_SOC 1794mW/1794mW")
ORIN_NANO_B = ("12-23-2024 22:54:11 RAM 3162/7620MB (lfb 4x2MB) SWAP 0/3810MB (cached 0MB) "
               "CPU [1%@729,0%@729,0%@729,0%@729,off,off] GR3D_FREQ 1% cpu@62.843C soc2@61.968C soc0@60.625C "
               "gpu@61.687C tj@62.843C soc1@61.687C VDD_IN 3913mW/3922mW VDD_CPU_GPU_CV 598mW/598 "
               "VDD_SOC 1238mW/1237mW")
AGX_XAVIER = ("RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) CPU [0%@1190,0%@1190,0%@1190,"
              "0%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% AO@30C GPU@30.5C Tboard@31C "
              "Tdiode@32C AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C GPU 463/463 CPU 618/618 SOC 2936/2936 "
              "CV 0/0 VDDRQ 309/309 SYS5V 3306/3306")
TX2 = ("RAM 1404/7860MB (lfb 236x4MB) SWAP 0/3930MB (cached 0MB) CPU [0%@345,0%@960,0%@960,0%@345,0%@345,"
       "0%@345] EMC_FREQ 0% GR3D_FREQ 0% PLL@35.5C MCPU@35.5C PMIC@100C Tboard@30C GPU@32C BCPU@35.5C "
       "thermal@34.1C Tdiode@31.5C VDD_SYS_GPU 153/153 VDD_SYS_SOC 306/306 VDD_4V0_WIFI 0/0 VDD_IN 1649/1649 "
       "VDD_SYS_CPU 306/306 VDD_SYS_DDR 173/173")


@pytest.mark.parametrize("line, rail, mw, rails", [
    (NANO_JP461, "POM_5V_IN", 1750, ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]),
    (NANO_B, "POM_5V_IN", 2003, ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]),
    (NX_JP45, "VDD_IN", 6140, ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]),
    (NX_JP512, "VDD_IN", 2763, ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]),
    (ORIN_NANO, "VDD_IN", 5263, ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]),
    (ORIN_NANO_B, "VDD_IN", 3913, ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]),
    (TX2, "VDD_IN", 1649, ["VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI", "VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR"]),
])
def test_input_rail_of_each_board(line, rail, mw, rails):
    reading = ts.parse_power(line)
    assert reading.rail == rail
    assert reading.milliwatts == mw
    assert list(reading.rails) == rails   # RAM 1923/3964MB, IRAM 0/252kB, CPU [...] are not rails


def test_instant_and_average_are_both_read():
    rails = ts.parse_rails(NANO_JP461)
    assert rails["POM_5V_IN"] == ts.Rail(1750, 1628)
    assert rails["POM_5V_CPU"] == ts.Rail(366, 406)
    assert ts.parse_rails(ORIN_NANO_B)["VDD_CPU_GPU_CV"] == ts.Rail(598, 598)


def test_board_without_an_input_rail_sums_its_rails():
    reading = ts.parse_power(AGX_XAVIER)
    assert reading.rail == ts.SUM_OF_RAILS
    assert reading.milliwatts == 463 + 618 + 2936 + 0 + 309 + 3306


def test_lines_without_power():
    assert ts.parse_power("RAM 1923/3964MB (lfb 2x2MB) SWAP 191/1982MB (cached 6MB)") is None
    assert ts.parse_power("") is None


def test_summary_and_energy():
    readings = [ts.parse_power(line) for line in (NANO_JP461, NANO_B)]
    summary = ts.summarize_power(readings, duration_s=1.0, interval_ms=100)
    assert summary.rail == "POM_5V_IN"
    assert summary.average_w == pytest.approx((1.750 + 2.003) / 2)
    assert summary.min_w == 1.75 and summary.max_w == 2.003
    # 5 W for 30 ms per inference = 150 mJ
    assert ts.energy_per_inference_mj(5.0, 0.030) == pytest.approx(150.0)
    assert ts.summarize_power([]) is None


def test_sampler_reads_a_stream_of_lines():
    script = ("import sys, time\n"
              "lines = [{!r}, {!r}]\n"
              "for i in range(200):\n"
              "    print(lines[i % 2], flush=True)\n"
              "    time.sleep(0.005)\n").format(NANO_JP461, NANO_B)
    with ts.TegrastatsSampler(interval_ms=5, command=[sys.executable, "-c", script]) as sampler:
        assert sampler.wait_for_samples(4, timeout_s=10.0)
    summary = sampler.summary()
    assert summary.rail == "POM_5V_IN"
    assert summary.samples >= 4
    assert 1.75 <= summary.average_w <= 2.003
    assert sampler.summary(start=0.0, end=0.0) is None   # a window before any sample


def test_sampler_without_tegrastats_is_not_an_error():
    sampler = ts.TegrastatsSampler(command=["/nonexistent/tegrastats"])
    sampler.start()
    sampler.stop()
    assert "could not start" in sampler.error
    assert sampler.summary() is None
