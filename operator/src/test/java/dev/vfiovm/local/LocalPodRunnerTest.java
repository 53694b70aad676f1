package dev.vfiovm.local;

import static org.assertj.core.api.Assertions.assertThat;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.api.BootSpec;
import dev.vfiovm.api.ContainerDiskSource;
import dev.vfiovm.api.DeviceSpec;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import dev.vfiovm.controller.NodePodShape;
import dev.vfiovm.controller.OperatorSettings;
import dev.vfiovm.controller.SpecValidation;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LocalPodRunnerTest {
  @Test
  void expandsReferencesLikeTheKubelet() {
    Map<String, String> env = Map.of("POD_NAME", "p1", "POD_NAMESPACE", "ns");
    assertThat(LocalPodRunner.expand("$(POD_NAMESPACE)/$(POD_NAME)", env)).isEqualTo("ns/p1");
    assertThat(LocalPodRunner.expand("$(UNKNOWN)-x", env)).isEqualTo("$(UNKNOWN)-x");
    assertThat(LocalPodRunner.expand("$$(POD_NAME)", env)).isEqualTo("$(POD_NAME)");
    assertThat(LocalPodRunner.expand("no refs", env)).isEqualTo("no refs");
    assertThat(LocalPodRunner.expand("$(open", env)).isEqualTo("$(open");
  }

  @Test
  void containerEnvResolvesValuesAndDownwardApiFields() {
    Container container = new ContainerBuilder().withName("agent")
        .addNewEnv().withName("A").withValue("1").endEnv()
        .addNewEnv().withName("B").withValue("$(A)-2").endEnv()
        .addNewEnv().withName("POD_NAME").withNewValueFrom().withNewFieldRef().withFieldPath("metadata.name")
        .endFieldRef().endValueFrom().endEnv()
        .addNewEnv().withName("POD_NAMESPACE").withNewValueFrom().withNewFieldRef()
        .withFieldPath("metadata.namespace").endFieldRef().endValueFrom().endEnv()
        .addNewEnv().withName("NODE").withNewValueFrom().withNewFieldRef().withFieldPath("spec.nodeName")
        .endFieldRef().endValueFrom().endEnv()
        .build();
    Pod pod = new PodBuilder().withNewMetadata().withName("vm-pod").withNamespace("vfiovm-system").endMetadata()
        .withNewSpec().withNodeName("node-1").withContainers(container).endSpec().build();

    assertThat(LocalPodRunner.containerEnv(pod, container)).containsExactly(
        Map.entry("A", "1"), Map.entry("B", "1-2"), Map.entry("POD_NAME", "vm-pod"),
        Map.entry("POD_NAMESPACE", "vfiovm-system"), Map.entry("NODE", "node-1"));
  }

  @Test
  void memTotalIsReadInBytes() {
    String meminfo = "MemTotal:       24588172 kB\nMemFree:        1000 kB\n";
    assertThat(HostMemory.parseMemTotal(meminfo)).isEqualTo(24588172L * 1024);
  }

  static final String IMAGE = "vfiovm/guest-demo:0.1.0";

  /** The node pod the operator builds for a VM booting kernel + initrd from IMAGE. */
  static Pod bootingPod(String image) {
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withNamespace("default").withName("demo").build());
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory("64Mi");
    spec.setDmaBackend(DmaBackend.IoUring);
    BootSpec boot = new BootSpec();
    boot.setContainerDisk(new ContainerDiskSource(image));
    boot.setKernel("/boot/vmlinuz");
    boot.setInitrd("/boot/initrd.img");
    boot.setCmdline("console=ttyS0 $(POD_NAME)");
    spec.setBoot(boot);
    vm.setSpec(spec);
    SpecValidation.Plan plan = SpecValidation.validate(spec, 1L << 20).plan();
    Pod pod = NodePodShape.build(vm, 1879048192L, "node-1", plan,
        OperatorSettings.defaults("vfiovm-system", "local/vfiovm:standalone"));
    pod.getMetadata().setName("vfiovm-demo-1");
    return pod;
  }

  /** An image's root as Debian lays it out: /boot/vmlinuz a symlink to the versioned file. */
  static Path imageRoot(Path dir) throws Exception {
    Path boot = Files.createDirectories(dir.resolve("boot"));
    Files.writeString(boot.resolve("vmlinuz-6.1.0"), "KERNEL", StandardCharsets.UTF_8);
    Files.createSymbolicLink(boot.resolve("vmlinuz"), Path.of("/boot/vmlinuz-6.1.0")); // absolute: inside the image
    Files.writeString(boot.resolve("initrd.img"), "INITRD", StandardCharsets.UTF_8);
    return dir;
  }

  @Test
  void aContainerDiskIsCopiedFromTheImagesDirectoryAndTheAgentsArgsPointThere(@TempDir Path tmp) throws Exception {
    Path root = imageRoot(Files.createDirectories(tmp.resolve("image")));
    Pod pod = bootingPod(IMAGE);
    Path podDir = tmp.resolve("pod");
    Map<String, Path> mounts = LocalPodRunner.prepare(pod, Map.of(IMAGE, root), podDir);
    Path bootDir = podDir.resolve("volumes").resolve("boot");
    assertThat(mounts).containsEntry("/vm/boot", bootDir);
    assertThat(bootDir.resolve("kernel")).hasContent("KERNEL");
    assertThat(bootDir.resolve("initrd")).hasContent("INITRD");

    Container agent = pod.getSpec().getContainers().get(0);
    Map<String, String> env = LocalPodRunner.containerEnv(pod, agent);
    assertThat(env).containsEntry("JAVA_TOOL_OPTIONS", NodePodShape.AGENT_JAVA_OPTIONS); // the process gets it
    List<String> args = LocalPodRunner.localArgs(agent.getArgs(), env, agent.getTerminationMessagePath(),
        podDir.resolve("termination-log"), mounts);
    assertThat(args).containsSequence("--kernel", bootDir.resolve("kernel").toString(),
        "--initrd", bootDir.resolve("initrd").toString(), "--cmdline", "console=ttyS0 $(POD_NAME)");
    assertThat(args).containsSequence("--report", podDir.resolve("termination-log").toString(),
        "--report-pod", "vfiovm-system/vfiovm-demo-1");
  }

  @Test
  void anImageWithoutADirectoryFailsThePodLikeErrImagePull(@TempDir Path tmp) {
    assertThatThrownBy(() -> LocalPodRunner.prepare(bootingPod("tenant.example/unknown:1"), Map.of(), tmp))
        .isInstanceOfSatisfying(LocalPodRunner.PodFailure.class, f -> {
          assertThat(f.reason).isEqualTo("ErrImagePull");
          assertThat(f.container).isEqualTo("boot-kernel");
          assertThat(f.getMessage()).contains("tenant.example/unknown:1")
              .contains("--image-dir tenant.example/unknown:1=DIR");
        });
  }

  @Test
  void aFileMissingFromTheImageFailsItsInitContainer(@TempDir Path tmp) throws Exception {
    Path root = imageRoot(Files.createDirectories(tmp.resolve("image")));
    Files.delete(root.resolve("boot/initrd.img"));
    assertThatThrownBy(() -> LocalPodRunner.prepare(bootingPod(IMAGE), Map.of(IMAGE, root), tmp.resolve("pod")))
        .isInstanceOfSatisfying(LocalPodRunner.PodFailure.class, f -> {
          assertThat(f.container).isEqualTo("boot-initrd");
          assertThat(f.exitCode).isEqualTo(1);
          assertThat(f.getMessage()).isEqualTo("cp: can't stat '/boot/initrd.img': No such file or directory");
        });
  }

  @Test
  void symlinksInTheImageStayInTheImage(@TempDir Path tmp) throws Exception {
    Path root = Files.createDirectories(tmp.resolve("image"));
    Files.createDirectories(root.resolve("etc"));
    Files.writeString(root.resolve("etc/hostname"), "image", StandardCharsets.UTF_8);
    Files.createSymbolicLink(root.resolve("escape"), Path.of("../../../../../../etc/hostname"));
    assertThat(LocalPodRunner.inImage(root, "/escape")).hasContent("image");
    assertThat(LocalPodRunner.inImage(root, "/../etc/hostname")).hasContent("image");
    assertThat(LocalPodRunner.inImage(root, "/missing")).isNull();
  }

  @Test
  void imageDirOptionsAreRefEqualsDir() {
    assertThat(LocalPodRunner.imageDir("localhost:5000/guest@sha256:ab=/srv/guest"))
        .isEqualTo(Map.entry("localhost:5000/guest@sha256:ab", Path.of("/srv/guest")));
    assertThatThrownBy(() -> LocalPodRunner.imageDir("/srv/guest")).hasMessageContaining("REF=DIR");
    assertThatThrownBy(() -> LocalPodRunner.imageDir("guest:1=")).hasMessageContaining("REF=DIR");
  }

  @Test
  void aPodWithoutBootHasNothingToPrepare(@TempDir Path tmp) throws Exception {
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withNamespace("default").withName("plain").build());
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory("2Mi");
    spec.setDevices(List.of(new DeviceSpec("0000:3b:00.0")));
    vm.setSpec(spec);
    Pod pod = NodePodShape.build(vm, 1879048192L, "node-1", SpecValidation.validate(spec, 1L << 20).plan(),
        OperatorSettings.defaults("vfiovm-system", "local/vfiovm:standalone"));
    assertThat(LocalPodRunner.prepare(pod, Map.of(), tmp)).isEmpty();
  }
}
