// Package deps pins the main module's dependencies while the packages that use them are written.
// TEMPORARY: removed once every dependency is imported by real code.
package deps

import (
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "go.uber.org/goleak"
	_ "gopkg.in/natefinch/lumberjack.v2"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/api/authorization/v1"
	_ "k8s.io/apimachinery/pkg/api/errors"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "k8s.io/client-go/tools/cache"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "k8s.io/client-go/tools/metrics"
	_ "k8s.io/client-go/util/flowcontrol"
	_ "k8s.io/client-go/util/cert"
	_ "k8s.io/client-go/util/keyutil"
	_ "k8s.io/cri-api/pkg/apis/testing"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
	_ "k8s.io/cri-client/pkg/logs"
)
