#!/bin/sh
echo "entrypoint $0 $*" > /entrypoint-ran
