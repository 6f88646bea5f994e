// Package collector reconciles the containers the informer reports against running log
// streams: one owner goroutine per container follows its pods/log stream, resumes it
// exactly after the last line written, and hands every line to the sink.
package collector
