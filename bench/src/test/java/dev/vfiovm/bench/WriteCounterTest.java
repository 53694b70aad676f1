package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class WriteCounterTest {
  static final String APPLY = "application/apply-patch+yaml";

  @Test
  void classifiesTheOperatorsWritesByKind() {
    String vm = "/apis/vfiovm.dev/v1alpha1/namespaces/ns/vfiovms/vm";
    String pod = "/api/v1/namespaces/sys/pods/vfiovm-ns-vm";
    assertThat(WriteCounter.classify("GET", vm, null)).isNull();
    assertThat(WriteCounter.classify("PATCH", vm + "/status", APPLY)).isEqualTo(WriteCounter.STATUS);
    assertThat(WriteCounter.classify("PUT", vm + "/status", null)).isEqualTo(WriteCounter.STATUS);
    assertThat(WriteCounter.classify("PATCH", vm, APPLY)).isEqualTo(WriteCounter.PATCH);
    assertThat(WriteCounter.classify("PATCH", pod, APPLY)).isEqualTo(WriteCounter.POD_CREATE);
    assertThat(WriteCounter.classify("POST", "/api/v1/namespaces/sys/pods", null)).isEqualTo(WriteCounter.POD_CREATE);
    assertThat(WriteCounter.classify("PATCH", pod, "application/merge-patch+json")).isEqualTo(WriteCounter.PATCH);
    assertThat(WriteCounter.classify("POST", "/api/v1/namespaces/ns/events", null)).isEqualTo(WriteCounter.EVENT);
    assertThat(WriteCounter.classify("DELETE", pod, null)).isEqualTo(WriteCounter.DELETE);
  }
}
