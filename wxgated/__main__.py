from wxgated.cli import main

raise SystemExit(main())
