"""Generated from proto/kairos/inference/v1 by `make gen`. DO NOT EDIT."""
