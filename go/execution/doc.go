// Package execution is the Kairos execution service (issue #7): it turns signals into orders, runs
// pre-trade risk, drives the order state machine, places orders on the paper or MT5 venue and
// journals every event, serving kairos.execution.v1 ExecutionService. The binary is
// cmd/kairos-execution; app assembles the process; docs/execution.md is the operator's guide.
package execution
