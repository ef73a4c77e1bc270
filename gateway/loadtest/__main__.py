from gateway.loadtest.cli import main

raise SystemExit(main())
