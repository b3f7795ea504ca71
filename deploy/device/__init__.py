"""Checks and steps run on the device: doctor (what is installed and working), the smoke tests of
the runtimes (smoke), and device-run's resumable steps and result archive (device_run)."""
