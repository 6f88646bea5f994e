// Package fakekubelet is a fake kubelet that a real kube-apiserver proxies pods/log to.
//
// It serves /containerLogs over HTTPS with the kubelet's own log reader
// (k8s.io/cri-client/pkg/logs.ReadLogs) on CRI log files it writes itself, so the bytes a
// client receives through the apiserver are the bytes a real kubelet would send. Tests drive
// the containers through explicit verbs (StartContainer, Append, Terminate, Restart,
// RotateLog, ...) which write pod status through the API as a kubelet would, and break
// streams on purpose through fault hooks (CutStreams, Stall, StallOpen, FailNext, FailFor,
// InjectBodyError, EndFollow, ForgetPrevious).
//
// It serves /exec the same way, with the kubelet's remote-command server
// (k8s.io/cri-streaming ServeExec, SPDY and WebSocket); Config.Exec runs the commands, for
// example as local processes (ExecLocal).
//
// There is no scheduler and no controller-manager next to it: tests create pods with
// spec.nodeName set to NodeName, and the fake kubelet finishes graceful deletions itself.
//
// Its own state is modelled on the kubelet's: the status it serves logs from is the status
// it last computed (the kubelet's status manager cache), not whatever the API holds, and the
// container runtime is a k8s.io/cri-api FakeRuntimeService kept in sync with the containers,
// because ReadLogs asks it whether a followed container still runs.
package fakekubelet
