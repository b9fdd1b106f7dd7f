"""Tests of image-build/'s pure parts (no image, no root, no network): run by `make test`."""
