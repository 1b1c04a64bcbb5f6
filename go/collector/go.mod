module github.com/kairos-mt5/kairos/go/collector

go 1.26.0
