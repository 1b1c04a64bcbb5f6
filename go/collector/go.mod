module github.com/kairos-mt5/kairos/go/collector

go 1.26.0

require (
	github.com/kairos-mt5/kairos/gen/go v0.0.0
	google.golang.org/protobuf v1.36.12
)

replace github.com/kairos-mt5/kairos/gen/go => ../../gen/go
