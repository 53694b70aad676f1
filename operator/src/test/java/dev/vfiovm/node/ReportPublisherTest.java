package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ReportPublisherTest {
  private static NodeAgentReport failed() {
    NodeAgentReport r = new NodeAgentReport();
    r.setPhase(AgentPhase.Failed);
    r.setVm("ns/vm");
    r.setHostUid(1879048192L);
    r.setMemlockLimitBytes(4194304L);
    r.setPinnedBytes(0L);
    r.setDmaBackend("IoUring");
    r.setAccounting("PerUser");
    r.setVmPid(42L);
    r.setDevices(List.of(new DeviceStatus("0000:3b:00.0", "/dev/vfio/devices/vfio0", false)));
    r.setError("ENOMEM");
    r.setMessage("pinning 3145728 bytes ... exceeds RLIMIT_MEMLOCK 4194304");
    return r;
  }

  @Test
  void reportJsonCarriesTheContractFields() throws Exception {
    JsonNode json = ReportPublisher.JSON.readTree(ReportPublisher.toJson(failed()));
    assertThat(json.get("phase").asText()).isEqualTo("Failed");
    assertThat(json.get("hostUid").asLong()).isEqualTo(1879048192L);
    assertThat(json.get("memlockLimitBytes").asLong()).isEqualTo(4194304L);
    assertThat(json.get("pinnedBytes").asLong()).isZero();
    assertThat(json.get("dmaBackend").asText()).isEqualTo("IoUring");
    assertThat(json.get("accounting").asText()).isEqualTo("PerUser");
    assertThat(json.get("vmPid").asLong()).isEqualTo(42L);
    assertThat(json.get("error").asText()).isEqualTo("ENOMEM");
    assertThat(json.get("devices").get(0).get("cdev").asText()).isEqualTo("/dev/vfio/devices/vfio0");
  }

  @Test
  void reportRoundTripsAndOmitsUnsetFields() {
    NodeAgentReport starting = new NodeAgentReport();
    starting.setPhase(AgentPhase.Starting);
    String json = ReportPublisher.toJson(starting);
    assertThat(json).doesNotContain("error").doesNotContain("vmPid");
    NodeAgentReport back = ReportPublisher.fromJson(ReportPublisher.toJson(failed()));
    assertThat(back.getError()).isEqualTo("ENOMEM");
    assertThat(back.getDevices()).extracting(DeviceStatus::getPciAddress).containsExactly("0000:3b:00.0");
  }

  @Test
  void annotationPatchIsAMergePatchOfTheReportAsAString() throws Exception {
    JsonNode patch = ReportPublisher.JSON.readTree(ReportPublisher.annotationPatch(failed()));
    String value = patch.get("metadata").get("annotations").get(NodeAgentReport.POD_ANNOTATION).asText();
    assertThat(ReportPublisher.fromJson(value).getPhase()).isEqualTo(AgentPhase.Failed);
  }

  @Test
  void fileIsReplacedWholeAndNoTempFileRemains(@TempDir Path dir) throws Exception {
    Path file = dir.resolve("sub/report.json");
    try (ReportPublisher p = new ReportPublisher(file, null)) {
      NodeAgentReport r = failed();
      p.publish(r);
      r.setPhase(AgentPhase.Stopped);
      p.publish(r);
    }
    assertThat(ReportPublisher.fromJson(Files.readString(file)).getPhase()).isEqualTo(AgentPhase.Stopped);
    try (var files = Files.list(file.getParent())) {
      assertThat(files.map(f -> f.getFileName().toString())).containsExactly("report.json");
    }
  }
}
