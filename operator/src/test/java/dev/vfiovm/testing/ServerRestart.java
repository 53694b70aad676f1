package dev.vfiovm.testing;

import io.fabric8.kubeapitest.KubeAPIServer;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.io.IOException;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;
import org.awaitility.Awaitility;

/**
 * A crash and restart of the fixture's kube-apiserver and etcd. kube-api-test can only start a fresh pair (new
 * ports, empty etcd) and wipes etcd's data when a process of it stops unexpectedly; so the running processes'
 * command lines are read from /proc (through {@link ProcessHandle}), the library's two process wrappers are
 * marked stopped (its exit handlers then do nothing), both processes get SIGKILL and are started again with
 * the same command lines: same ports, same certificates, same etcd data and WAL directories. The restarted
 * processes are this class's to end (a shutdown hook); the fixture's own stop then only removes the data.
 */
final class ServerRestart {
  private static final Duration READY = Duration.ofSeconds(180);
  private static Process api;
  private static Process etcd;
  private static List<String> apiCommand;
  private static List<String> etcdCommand;

  private ServerRestart() {}

  static synchronized void restart(KubeAPIServer server) {
    try {
      if (api == null) {
        Object apiWrapper = field(server, "kubeApiServerProcess");
        Object etcdWrapper = field(server, "etcdProcess");
        set(apiWrapper, "stopped", true);
        set(etcdWrapper, "stopped", true);
        api = (Process) field(apiWrapper, "apiServerProcess");
        etcd = (Process) field(etcdWrapper, "etcdProcess");
        apiCommand = commandLine(api);
        etcdCommand = commandLine(etcd);
        Runtime.getRuntime().addShutdownHook(new Thread(ServerRestart::stop, "kube-apiserver-restarted-stop"));
      }
      api.destroyForcibly().waitFor();
      etcd.destroyForcibly().waitFor();
      Path logs = Files.createTempDirectory("kube-api-restart");
      etcd = new ProcessBuilder(etcdCommand).redirectErrorStream(true)
          .redirectOutput(logs.resolve("etcd.log").toFile()).start();
      int etcdPort = port(value(etcdCommand, "--listen-client-urls"));
      await("etcd listening on " + etcdPort, () -> listening(etcdPort));
      api = new ProcessBuilder(apiCommand).redirectErrorStream(true)
          .redirectOutput(logs.resolve("kube-apiserver.log").toFile()).start();
      try (KubernetesClient client = KubeApiServerFixture.newClient()) {
        await("kube-apiserver ready again (log: " + logs + ")", () -> {
          try {
            return "ok".equals(client.raw("/readyz"));
          } catch (RuntimeException e) {
            return false;
          }
        });
      }
    } catch (IOException e) {
      throw new IllegalStateException("cannot restart kube-apiserver/etcd: " + e.getMessage(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("kube-api-test's internals changed; ServerRestart needs an update: " + e, e);
    }
  }

  private static void stop() {
    if (api != null) {
      api.destroyForcibly();
    }
    if (etcd != null) {
      etcd.destroyForcibly();
    }
  }

  private static List<String> commandLine(Process p) {
    ProcessHandle.Info info = p.info();
    List<String> command = new ArrayList<>();
    command.add(info.command().orElseThrow(() -> new IllegalStateException("no command line of pid " + p.pid())));
    command.addAll(List.of(info.arguments().orElse(new String[0])));
    return command;
  }

  private static String value(List<String> command, String flag) {
    for (int i = 0; i < command.size(); i++) {
      if (command.get(i).equals(flag) && i + 1 < command.size()) {
        return command.get(i + 1);
      }
      if (command.get(i).startsWith(flag + "=")) {
        return command.get(i).substring(flag.length() + 1);
      }
    }
    throw new IllegalStateException(flag + " not in " + command);
  }

  private static int port(String url) {
    String first = url.split(",")[0];
    return Integer.parseInt(first.substring(first.lastIndexOf(':') + 1).replaceAll("/.*", ""));
  }

  private static boolean listening(int port) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress("127.0.0.1", port), 500);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private static void await(String what, BooleanSupplier condition) {
    Awaitility.await(what).atMost(READY).pollInterval(Duration.ofMillis(200)).until(condition::getAsBoolean);
  }

  private static Object field(Object o, String name) throws ReflectiveOperationException {
    Field f = o.getClass().getDeclaredField(name);
    f.setAccessible(true);
    return f.get(o);
  }

  private static void set(Object o, String name, boolean value) throws ReflectiveOperationException {
    Field f = o.getClass().getDeclaredField(name);
    f.setAccessible(true);
    f.setBoolean(o, value);
  }
}
