module github.com/kairos-mt5/kairos/go/testkit

go 1.26.0
