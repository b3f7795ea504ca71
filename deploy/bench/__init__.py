"""The benchmark: the timing protocol and its runs (protocol), statistics (stats), the reports
(report), power sampling on a Jetson (tegrastats) and the end-to-end predict bench (e2e)."""
