"""``python -m collectors.testing``: serve a synthetic fleet from the test API server (see fake_apiserver.main)."""

from collectors.testing.fake_apiserver import main

main()
