"""Generated from proto/kairos/execution/v1 by `make gen`. DO NOT EDIT."""
