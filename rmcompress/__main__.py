from rmcompress.cli import main

raise SystemExit(main())
