"""nopidfd.py - runs a Python program as Python before 3.9 (or on a
kernel before 5.3) would: without os.pidfd_open.

    nopidfd.py PROGRAM.py [ARGS...]
"""
import os
import runpy
import sys

del os.pidfd_open
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
