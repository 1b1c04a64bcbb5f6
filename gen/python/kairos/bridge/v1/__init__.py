"""Generated from proto/kairos/bridge/v1 by `make gen`. DO NOT EDIT."""
