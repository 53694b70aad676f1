package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.DeviceSpec;
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
    spec.setVmCommand(List.of(""));
    SpecValidation.Result result = SpecValidation.validate(spec, GI);
    assertThat(result.violations()).extracting(SpecValidation.Violation::field)
        .contains("spec.memory", "spec.devices[0].pciAddress", "spec.nodeName", "spec.nodeSelector", "spec.vmCommand[0]");
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
}
