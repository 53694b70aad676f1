package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.BootSpec;
import dev.vfiovm.api.Console;
import dev.vfiovm.api.ContainerDiskSource;
import dev.vfiovm.api.DeviceSpec;
import dev.vfiovm.api.PersistentVolumeClaimSource;
import dev.vfiovm.api.VfioVmSpec;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SpecValidationTest {
  static final long GI = 1L << 30;

  static VfioVmSpec spec(String memory, String... devices) {
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory(memory);
    spec.setDevices(java.util.Arrays.stream(devices).map(DeviceSpec::new).toList());
    return spec;
  }

  @Test
  void aValidSpecYieldsItsPlan() {
    SpecValidation.Result result = SpecValidation.validate(spec("4Gi", "0000:3b:00.0", "0000:3b:00.1"), GI);
    assertThat(result.valid()).isTrue();
    assertThat(result.plan()).isEqualTo(new SpecValidation.Plan(4 * GI, 5 * GI, List.of("0000:3b:00.0", "0000:3b:00.1")));
  }

  @Test
  void memoryMustBeAWholeNumberOfPagesAndTheMessageSuggestsOne() {
    SpecValidation.Result result = SpecValidation.validate(spec("1000001"), GI);
    assertThat(result.valid()).isFalse();
    assertThat(result.violations()).singleElement().satisfies(v -> {
      assertThat(v.field()).isEqualTo("spec.memory");
      assertThat(v.message()).contains("4 KiB pages").contains("1003520");
    });
    assertThat(SpecValidation.validate(spec("1.5Gi"), GI).valid()).isTrue();
    assertThat(SpecValidation.validate(spec("4096"), GI).valid()).isTrue();
  }

  @Test
  void atMost32DevicesAndNodeSelectorLabelsAsTheCrdHasThem() {
    String[] many = java.util.stream.IntStream.range(0, 33).mapToObj(i -> "0000:%02x:00.0".formatted(i))
        .toArray(String[]::new);
    assertThat(SpecValidation.validate(spec("1Gi", many), GI).message())
        .contains("spec.devices: 33 devices are more than 32; list at most 32");
    assertThat(SpecValidation.validate(spec("1Gi", java.util.Arrays.copyOf(many, 32)), GI).valid()).isTrue();
    VfioVmSpec labels = spec("1Gi");
    labels.setNodeSelector(java.util.Map.of("kubernetes.io/hostname", "w-1", "Zone_A", ""));
    assertThat(SpecValidation.validate(labels, GI).valid()).isTrue();
    labels.setNodeSelector(java.util.Map.of("Example.com/gpu", "x"));
    assertThat(SpecValidation.validate(labels, GI).message()).contains("'Example.com/gpu' is not a valid label key");
    labels.setNodeSelector(java.util.Map.of("example.com/", "x"));
    assertThat(SpecValidation.validate(labels, GI).message()).contains("'example.com/' is not a valid label key");
  }

  @Test
  void memoryMustBeAPositiveQuantity() {
    assertThat(SpecValidation.validate(spec(null), GI).message()).contains("spec.memory").contains("required");
    assertThat(SpecValidation.validate(spec("0"), GI).message()).contains("spec.memory");
    assertThat(SpecValidation.validate(spec("-1Gi"), GI).message()).contains("spec.memory");
    assertThat(SpecValidation.validate(spec("lots"), GI).message()).contains("'lots' is not a positive quantity");
    assertThat(SpecValidation.validate(spec("1m"), GI).valid()).isFalse(); // milli-bytes
  }

  @Test
  void aDeviceListedTwiceIsNamed() {
    SpecValidation.Result result = SpecValidation.validate(spec("1Gi", "0000:3b:00.0", "0000:3b:00.0"), GI);
    assertThat(result.violations()).singleElement()
        .isEqualTo(new SpecValidation.Violation("spec.devices",
            "device 0000:3b:00.0 is listed more than once; list each device once"));
  }

  @Test
  void aMalformedPciAddressNamesItsIndex() {
    SpecValidation.Result result = SpecValidation.validate(spec("1Gi", "0000:3b:00.0", "0000:3B:00.0", ""), GI);
    assertThat(result.violations()).extracting(SpecValidation.Violation::field)
        .containsExactly("spec.devices[1].pciAddress", "spec.devices[2].pciAddress");
    assertThat(result.message()).contains("lower-case");
  }

  @Test
  void everyViolationIsReportedAtOnce() {
    VfioVmSpec spec = spec("3", "x", "x");
    spec.setNodeName("Not_A_Node");
    spec.setNodeSelector(Map.of("bad key!", "v"));
    spec.setCpus(0);
    SpecValidation.Result result = SpecValidation.validate(spec, GI);
    assertThat(result.violations()).extracting(SpecValidation.Violation::field)
        .contains("spec.memory", "spec.devices[0].pciAddress", "spec.nodeName", "spec.nodeSelector", "spec.cpus");
    assertThat(result.plan()).isNull();
  }

  @Test
  void aLimitThatOverflowsIsRefused() {
    VfioVmSpec spec = spec("4Ei", "0000:3b:00.0", "0000:3b:00.1", "0000:3b:00.2");
    spec.setViommu(true);
    assertThat(SpecValidation.validate(spec, GI).message()).contains("overflows");
  }

  @Test
  void nodeNameAndNodeSelectorMayBothBeSetTheNodeDecides() {
    VfioVmSpec spec = spec("1Gi");
    spec.setNodeName("worker-1");
    spec.setNodeSelector(Map.of("vfiovm.dev/gpu", "true"));
    assertThat(SpecValidation.validate(spec, GI).valid()).isTrue();
  }

  static BootSpec kernelBoot(String image) {
    BootSpec boot = new BootSpec();
    boot.setContainerDisk(new ContainerDiskSource(image));
    boot.setKernel("/boot/vmlinuz");
    boot.setInitrd("/boot/initrd.img");
    boot.setCmdline("console=ttyS0 quiet");
    return boot;
  }

  static VfioVmSpec withBoot(BootSpec boot) {
    VfioVmSpec spec = spec("64Mi");
    spec.setBoot(boot);
    return spec;
  }

  static List<String> fields(VfioVmSpec spec) {
    return SpecValidation.validate(spec, GI).violations().stream().map(SpecValidation.Violation::field).toList();
  }

  @Test
  void withoutBootTheVmRunsTheFirmwareOnlyOnOneVcpuWithASerialConsole() {
    SpecValidation.Plan plan = SpecValidation.validate(spec("64Mi"), GI).plan();
    assertThat(plan.cpus()).isEqualTo(1);
    assertThat(plan.boot()).isNull();
    assertThat(plan.console()).isEqualTo(Console.Serial);
  }

  @Test
  void aKernelBootFromAContainerDiskYieldsItsBootPlan() {
    VfioVmSpec spec = withBoot(kernelBoot("vfiovm/guest-demo:0.1.0"));
    spec.setCpus(2);
    spec.setConsole(Console.None);
    SpecValidation.Plan plan = SpecValidation.validate(spec, GI).plan();
    assertThat(plan.cpus()).isEqualTo(2);
    assertThat(plan.console()).isEqualTo(Console.None);
    assertThat(plan.boot()).isEqualTo(new SpecValidation.Boot("vfiovm/guest-demo:0.1.0", "/boot/vmlinuz",
        "/boot/initrd.img", "console=ttyS0 quiet", null));
    BootSpec disk = new BootSpec();
    disk.setContainerDisk(new ContainerDiskSource("registry.example:5000/guests/disk@sha256:" + "a".repeat(64)));
    disk.setDisk("/disk/guest.qcow2");
    assertThat(SpecValidation.validate(withBoot(disk), GI).plan().boot().disk()).isEqualTo("/disk/guest.qcow2");
  }

  @Test
  void cpusMustBeOneToSixtyFour() {
    for (int cpus : new int[] {0, -1, 65}) {
      VfioVmSpec spec = spec("64Mi");
      spec.setCpus(cpus);
      assertThat(SpecValidation.validate(spec, GI).violations()).singleElement().satisfies(v -> {
        assertThat(v.field()).isEqualTo("spec.cpus");
        assertThat(v.message()).contains("1 to 64");
      });
    }
    VfioVmSpec max = spec("64Mi");
    max.setCpus(64);
    assertThat(SpecValidation.validate(max, GI).valid()).isTrue();
  }

  @Test
  void bootNeedsExactlyOneSource() {
    BootSpec neither = kernelBoot(null);
    neither.setContainerDisk(null);
    assertThat(SpecValidation.validate(withBoot(neither), GI).violations()).singleElement().satisfies(v -> {
      assertThat(v.field()).isEqualTo("spec.boot");
      assertThat(v.message()).contains("no source").contains("spec.boot.containerDisk.image");
    });
    BootSpec both = kernelBoot("vfiovm/guest-demo:0.1.0");
    both.setPersistentVolumeClaim(new PersistentVolumeClaimSource("guest"));
    assertThat(SpecValidation.validate(withBoot(both), GI).message())
        .contains("spec.boot: set exactly one source: containerDisk or persistentVolumeClaim, not both");
  }

  @Test
  void aPersistentVolumeClaimIsRefusedWithTheReason() {
    BootSpec pvc = kernelBoot(null);
    pvc.setContainerDisk(null);
    pvc.setPersistentVolumeClaim(new PersistentVolumeClaimSource("guest"));
    SpecValidation.Result result = SpecValidation.validate(withBoot(pvc), GI);
    assertThat(result.violations()).singleElement().satisfies(v -> {
      assertThat(v.field()).isEqualTo("spec.boot.persistentVolumeClaim");
      assertThat(v.message()).contains("not supported").contains("operator's namespace").contains("containerDisk");
    });
  }

  @Test
  void theImageMustBeAnOciReference() {
    for (String bad : new String[] {"", "Upper/Case:1", "demo:", "demo:tag with space", "-demo", "demo@sha256:12",
        "https://registry.example/demo"}) {
      assertThat(fields(withBoot(kernelBoot(bad)))).as(bad).containsExactly("spec.boot.containerDisk.image");
    }
    for (String good : new String[] {"demo", "vfiovm/guest-demo:0.1.0", "localhost:5000/a/b_c.d-e:v1.2",
        "registry.example/guests/demo@sha256:" + "0".repeat(64), "quay.io/a/b:1@sha256:" + "f".repeat(64)}) {
      assertThat(SpecValidation.validate(withBoot(kernelBoot(good)), GI).valid()).as(good).isTrue();
    }
    assertThat(SpecValidation.validate(withBoot(kernelBoot("Bad")), GI).message())
        .contains("'Bad' is not an OCI image reference");
  }

  @Test
  void kernelAndDiskExcludeEachOtherAndOneIsNeeded() {
    BootSpec both = kernelBoot("demo:1");
    both.setInitrd(null);
    both.setCmdline(null);
    both.setDisk("/disk.img");
    assertThat(SpecValidation.validate(withBoot(both), GI).violations()).singleElement()
        .satisfies(v -> assertThat(v.toString()).contains("spec.boot: set either kernel").contains("not both"));
    BootSpec none = new BootSpec();
    none.setContainerDisk(new ContainerDiskSource("demo:1"));
    assertThat(SpecValidation.validate(withBoot(none), GI).violations()).singleElement()
        .satisfies(v -> assertThat(v.toString()).contains("spec.boot: set kernel").contains("or disk"));
  }

  @Test
  void initrdAndCmdlineNeedAKernel() {
    BootSpec boot = kernelBoot("demo:1");
    boot.setKernel(null);
    boot.setDisk("/disk.img");
    assertThat(fields(withBoot(boot))).containsExactly("spec.boot.initrd", "spec.boot.cmdline");
    assertThat(SpecValidation.validate(withBoot(boot), GI).message()).contains("only with spec.boot.kernel");
  }

  @Test
  void pathsMustBeAbsoluteWithoutDotDot() {
    BootSpec boot = kernelBoot("demo:1");
    boot.setKernel("boot/vmlinuz");
    boot.setInitrd("/boot/../etc/shadow");
    SpecValidation.Result result = SpecValidation.validate(withBoot(boot), GI);
    assertThat(result.violations()).extracting(SpecValidation.Violation::field)
        .containsExactly("spec.boot.kernel", "spec.boot.initrd");
    assertThat(result.message()).contains("'boot/vmlinuz' is relative").contains("e.g. /boot/vmlinuz")
        .contains("contains '..'");
    BootSpec disk = new BootSpec();
    disk.setContainerDisk(new ContainerDiskSource("demo:1"));
    disk.setDisk("..");
    assertThat(fields(withBoot(disk))).containsExactly("spec.boot.disk");
    disk.setDisk("/disks/");
    assertThat(fields(withBoot(disk))).containsExactly("spec.boot.disk");
    disk.setDisk("/a..b/disk..img");
    assertThat(SpecValidation.validate(withBoot(disk), GI).valid()).isTrue();
  }

  @Test
  void theCmdlineIsBoundedAndOneLine() {
    BootSpec boot = kernelBoot("demo:1");
    boot.setCmdline("x".repeat(2049));
    assertThat(SpecValidation.validate(withBoot(boot), GI).message()).contains("spec.boot.cmdline").contains("2048");
    boot.setCmdline("console=ttyS0\ninit=/bin/sh");
    assertThat(fields(withBoot(boot))).containsExactly("spec.boot.cmdline");
    boot.setCmdline("console=ttyS0 $(POD_NAME) 'quoted'");
    assertThat(SpecValidation.validate(withBoot(boot), GI).valid()).isTrue();
  }

  @Test
  void anInvalidBootGetsNoPlanAndEveryBootViolationAtOnce() {
    BootSpec boot = kernelBoot("NOPE");
    boot.setKernel("vmlinuz");
    boot.setDisk("disk");
    VfioVmSpec spec = withBoot(boot);
    spec.setCpus(100);
    SpecValidation.Result result = SpecValidation.validate(spec, GI);
    assertThat(result.plan()).isNull();
    assertThat(result.violations()).extracting(SpecValidation.Violation::field).containsExactly(
        "spec.cpus", "spec.boot.containerDisk.image", "spec.boot", "spec.boot.kernel", "spec.boot.disk");
  }
}
