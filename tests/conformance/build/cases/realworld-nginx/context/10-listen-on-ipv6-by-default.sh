#!/bin/sh
# 10-listen-on-ipv6-by-default
exit 0
