"""`python -m dogbreed.data download --root DIR`: see dogbreed.data.download."""

from dogbreed.data.download import main

raise SystemExit(main())
