from backflip.cli import main

raise SystemExit(main())
