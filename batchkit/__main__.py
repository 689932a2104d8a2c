import sys

try:  # Ctrl-C before the command line has loaded: exit 130, no traceback
    from batchkit.cli import main
except KeyboardInterrupt:
    sys.stderr.write("error: interrupted\n")
    raise SystemExit(130) from None

main()
