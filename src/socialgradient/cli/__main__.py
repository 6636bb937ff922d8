"""``python -m socialgradient.cli``: the ``socialgradient`` command."""

from socialgradient.cli import main

raise SystemExit(main())
