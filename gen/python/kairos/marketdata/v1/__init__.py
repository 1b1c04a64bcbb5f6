"""Generated from proto/kairos/marketdata/v1 by `make gen`. DO NOT EDIT."""
