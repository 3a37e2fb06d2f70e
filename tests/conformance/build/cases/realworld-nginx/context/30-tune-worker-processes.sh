#!/bin/sh
# 30-tune-worker-processes
exit 0
