package sink

import (
	"testing"

	"go.uber.org/goleak"
)

// lumberjackMill is the goroutine every lumberjack.Logger starts on its first open and
// never stops (natefinch/lumberjack#56). The Manager bounds how many exist, which
// TestGoroutinesBoundedByOpenFiles proves; goleak checks that nothing else survives.
const lumberjackMill = "gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction(lumberjackMill))
}
