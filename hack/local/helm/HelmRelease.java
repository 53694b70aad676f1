import com.marcnuri.helm.Release;
import java.nio.file.Path;

/**
 * `helm upgrade --install --wait` and `helm uninstall` through helm-java (no helm binary on our machines).
 * Run as a single-file program: java -cp HELM_JAVA_CLASSPATH HelmRelease.java install CHART RELEASE NS KUBECONFIG [k=v]...
 * or: ... HelmRelease.java uninstall RELEASE NS KUBECONFIG
 */
public final class HelmRelease {
  public static void main(String[] args) {
    switch (args[0]) {
      case "install" -> {
        var upgrade =
            new com.marcnuri.helm.Helm(Path.of(args[1]))
                .upgrade()
                .install()
                .withName(args[2])
                .withNamespace(args[3])
                .withKubeConfig(Path.of(args[4]))
                .waitReady()
                .withTimeout(300);
        for (int i = 5; i < args.length; i++) {
          String[] kv = args[i].split("=", 2);
          upgrade.set(kv[0], kv[1]);
        }
        Release release = upgrade.call();
        System.out.println("release " + release.getName() + " " + release.getStatus()
            + " (revision " + release.getRevision() + ")");
      }
      case "uninstall" ->
          System.out.println(
              com.marcnuri.helm.Helm.uninstall(args[1])
                  .withNamespace(args[2])
                  .withKubeConfig(Path.of(args[3]))
                  .ignoreNotFound()
                  .call());
      default -> throw new IllegalArgumentException("install or uninstall, not " + args[0]);
    }
  }
}
