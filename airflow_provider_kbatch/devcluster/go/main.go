// Command kbatch-k8s is one multi-call binary holding the Kubernetes control
// plane that the kbatch development cluster runs: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kubectl. Linking them together
// costs one link instead of five.
//
// Usage: kbatch-k8s <component> [flags...]
// or call it through a symlink named after the component.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	_ "time/tzdata" // CronJob time zones

	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	jobcontroller "k8s.io/kubernetes/pkg/controller/job"
)

// backoffEnv, when set to a Go duration, replaces the Job controller's pod
// failure backoff (10s by default, 10m at most) so that retry tests finish in
// seconds. Unset, the controller keeps the real defaults.
const backoffEnv = "KBATCH_DEV_JOB_POD_FAILURE_BACKOFF"

var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if !contains(name) {
		if len(os.Args) < 2 || !contains(os.Args[1]) {
			fmt.Fprintf(os.Stderr, "usage: %s {%s} [flags]\n", name, strings.Join(components, "|"))
			os.Exit(2)
		}
		name = os.Args[1]
		args = os.Args[1:]
	}
	os.Args = args
	os.Exit(run(name))
}

func contains(name string) bool {
	for _, c := range components {
		if c == name {
			return true
		}
	}
	return false
}

func run(name string) int {
	switch name {
	case "etcd":
		etcdmain.Main(os.Args)
		return 0
	case "kube-apiserver":
		return cli.Run(apiserver.NewAPIServerCommand())
	case "kube-controller-manager":
		if err := shortenJobBackoff(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		return cli.Run(controllermanager.NewControllerManagerCommand())
	case "kube-scheduler":
		return cli.Run(scheduler.NewSchedulerCommand())
	case "kubectl":
		logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	}
	return 2
}

func shortenJobBackoff() error {
	value := os.Getenv(backoffEnv)
	if value == "" {
		return nil
	}
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 {
		return fmt.Errorf("%s=%q: want a positive Go duration such as 500ms", backoffEnv, value)
	}
	jobcontroller.DefaultJobPodFailureBackOff = d
	if jobcontroller.MaxJobPodFailureBackOff > 30*d {
		jobcontroller.MaxJobPodFailureBackOff = 30 * d
	}
	fmt.Fprintf(os.Stderr, "kbatch dev: Job pod failure backoff %s (max %s)\n", d, jobcontroller.MaxJobPodFailureBackOff)
	return nil
}
