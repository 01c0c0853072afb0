from cmh.cli import main

raise SystemExit(main())
