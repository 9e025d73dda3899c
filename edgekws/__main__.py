"""`python -m edgekws` runs the command-line interface."""

from edgekws.cli import main

raise SystemExit(main())
