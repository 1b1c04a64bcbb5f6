module github.com/kairos-mt5/kairos/go/envflag

go 1.26.0
