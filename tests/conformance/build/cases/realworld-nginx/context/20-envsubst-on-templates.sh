#!/bin/sh
# 20-envsubst-on-templates
exit 0
