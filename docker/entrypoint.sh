#!/bin/sh
# Entry point of every sglang-fl image: SGLang's HTTP server with the plugin, on 0.0.0.0:30000.
#
#   docker run IMAGE                          serve (the embedded tiny model without --model-path)
#   docker run IMAGE --model-path /models/M   any SGLang argument; they come after the defaults
#                                             below, so --port/--host given here replace them
#   docker run IMAGE sglang-fl config         anything not starting with "-" runs as a command
#
# Configuration: the SGLANG_FL_* and USE_FLAGGEMS variables (-e) and the YAML file that
# SGLANG_FL_CONFIG names (mounted with -v). `sglang-fl serve` validates all of it before SGLang
# starts: a bad value stops the container with sglang-fl's one-line error and exit code 2.
# `exec` all the way down: the server becomes PID 1 and gets `docker stop`'s SIGTERM itself.
set -eu
case "${1:-}" in
  "" | -*) exec sglang-fl serve --host 0.0.0.0 --port 30000 "$@" ;;
  *) exec "$@" ;;
esac
