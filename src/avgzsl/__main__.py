"""`python -m avgzsl ...` is the `avgzsl` command."""
from .cli import main

raise SystemExit(main())
