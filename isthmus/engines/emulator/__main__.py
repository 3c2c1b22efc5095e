"""``python -m isthmus.engines.emulator``."""

from isthmus.engines.emulator.fleet import main

raise SystemExit(main())
