// Package testkit groups the test fixtures: stacktest reaches the real
// Kafka and MinIO started by scripts/stack, archivetest builds archives and
// produces events for the archiver and query tests. Nothing outside
// _test.go files and test/ imports them; production helpers live beside
// them in internal/, never here.
package testkit
