"""Generated from proto/kairos/collector/v1 by `make gen`. DO NOT EDIT."""
