"""Generated from proto/kairos/types/v1 by `make gen`. DO NOT EDIT."""
