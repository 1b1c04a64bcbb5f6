module github.com/kairos-mt5/kairos/go/execution

go 1.26.0
