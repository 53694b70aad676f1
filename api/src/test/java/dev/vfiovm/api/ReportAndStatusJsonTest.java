package dev.vfiovm.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

/**
 * The JSON of the agent's report (pod annotation, read by an operator of another version) and of the VfioVm
 * status (the CRD's) is a contract: the field types they share must not change a name, a nesting or what
 * null or empty values write.
 */
class ReportAndStatusJsonTest {
  static final ObjectMapper JSON = new ObjectMapper();

  /** Every field set: read into the class and written back, the JSON must come out the same. */
  static final String REPORT = """
      {"phase":"Running","vm":"ns/vm","hostUid":1879048192,"memlockLimitBytes":2147483648,
       "pinnedBytes":1073741824,"dmaBackend":"Iommufd","accounting":"PerUser","vmPid":42,
       "devices":[{"pciAddress":"0000:3b:00.0","cdev":"/dev/vfio/devices/vfio0","attached":true}],
       "error":"ENOMEM","message":"m","vmm":"QEMU 10.0.2","console":"stdout of the node agent",
       "consoleBytes":7,"cgroup":"/vfiovm/x","sandbox":"bwrap"}""";
  static final String STATUS = """
      {"phase":"Running","message":"m","nodeName":"n","hostUid":1879048192,"memlockLimitBytes":2147483648,
       "pinnedBytes":1073741824,"accounting":"PerUser","dmaBackend":"Iommufd","podName":"vfiovm-system/p",
       "console":"kubectl logs",
       "devices":[{"pciAddress":"0000:3b:00.0","cdev":"/dev/vfio/devices/vfio0","attached":true}],
       "conditions":[{"status":"True","type":"Ready"}],"observedGeneration":3}""";

  static <T> JsonNode roundTrip(String json, Class<T> type) throws Exception {
    return JSON.readTree(JSON.writeValueAsString(JSON.readValue(json, type)));
  }

  @Test
  void theReportsJsonKeepsItsNamesAndNesting() throws Exception {
    assertThat(roundTrip(REPORT, NodeAgentReport.class)).isEqualTo(JSON.readTree(REPORT));
    NodeAgentReport r = JSON.readValue(REPORT, NodeAgentReport.class);
    assertThat(r.getHostUid()).isEqualTo(1879048192L);
    assertThat(r.getPinnedBytes()).isEqualTo(1L << 30);
    assertThat(r.getDevices()).singleElement().satisfies(d -> assertThat(d.isAttached()).isTrue());
    // nulls are left out, except cgroup (null says: no cgroup of its own); devices default to []
    assertThat(JSON.readTree(JSON.writeValueAsString(new NodeAgentReport())))
        .isEqualTo(JSON.readTree("{\"devices\":[],\"cgroup\":null}"));
  }

  @Test
  void theStatusJsonKeepsItsNamesAndNesting() throws Exception {
    assertThat(roundTrip(STATUS, VfioVmStatus.class)).isEqualTo(JSON.readTree(STATUS));
    VfioVmStatus s = JSON.readValue(STATUS, VfioVmStatus.class);
    assertThat(s.getMemlockLimitBytes()).isEqualTo(2L << 30);
    assertThat(s.getDmaBackend()).isEqualTo("Iommufd");
    assertThat(JSON.readTree(JSON.writeValueAsString(new VfioVmStatus())))
        .isEqualTo(JSON.readTree("{\"devices\":[],\"conditions\":[]}"));
  }

  @Test
  void theStatusTakesWhatTheAgentMeasuredButNotTheOperatorsUidAndLimit() throws Exception {
    NodeAgentReport report = JSON.readValue(REPORT, NodeAgentReport.class);
    VfioVmStatus status = new VfioVmStatus();
    status.setHostUid(7L);
    status.setMemlockLimitBytes(8L);
    status.copyMeasuredFrom(report);
    assertThat(status.getPinnedBytes()).isEqualTo(1L << 30);
    assertThat(status.getAccounting()).isEqualTo("PerUser");
    assertThat(status.getDmaBackend()).isEqualTo("Iommufd");
    assertThat(status.getHostUid()).isEqualTo(7L);
    assertThat(status.getMemlockLimitBytes()).isEqualTo(8L);
    assertThat(status.getDevices()).usingRecursiveFieldByFieldElementComparator().isEqualTo(report.getDevices());
    status.getDevices().get(0).setAttached(false); // a copy: the report's stays as reported
    assertThat(report.getDevices().get(0).isAttached()).isTrue();
  }
}
