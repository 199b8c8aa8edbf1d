import sys

try:
    from .cli import main
except ImportError as exc:  # the job's interpreter lacks a dependency the CLI imports: say whose
    from .errors import missing_module

    why = missing_module(exc)
    if why is None:
        raise
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    print(f"ghanet {command}: error: {why}".replace("ghanet : ", "ghanet: "), file=sys.stderr)
    sys.exit(1)

sys.exit(main())
