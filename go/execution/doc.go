// Package execution will hold the Kairos execution service (issue #7): it turns signals into orders,
// runs pre-trade risk, drives the order state machine, places orders on the paper or MT5 venue and
// journals every event, serving kairos.execution.v1 ExecutionService.
//
// Only the module exists so far, so that go.work, `make lint` and `make test` already cover it.
package execution
