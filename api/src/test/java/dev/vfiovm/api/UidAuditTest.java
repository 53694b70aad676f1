package dev.vfiovm.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import org.junit.jupiter.api.Test;

class UidAuditTest {
  static final String CONTRACT =
      "{\"scannedAt\":\"2026-12-01T14:00:00Z\",\"uidRangeStart\":1879048192,\"uidRangeSize\":65536,\"liveUids\":[1879048193]}";

  @Test
  void writesTheContractsJson() {
    assertThat(new UidAudit("2026-12-01T14:00:00Z", 1879048192, 65536, List.of(1879048193L)).toJson())
        .isEqualTo(CONTRACT);
    assertThat(UidAudit.ANNOTATION).isEqualTo("vfiovm.dev/uid-audit");
  }

  @Test
  void readsIt() {
    assertThat(UidAudit.fromJson(CONTRACT))
        .isEqualTo(new UidAudit("2026-12-01T14:00:00Z", 1879048192, 65536, List.of(1879048193L)));
    assertThat(UidAudit.fromJson("{\"scannedAt\":\"x\",\"uidRangeStart\":1,\"uidRangeSize\":2}").liveUids()).isEmpty();
  }

  @Test
  void garbageSaysWhichAnnotation() {
    assertThatThrownBy(() -> UidAudit.fromJson("nope")).hasMessageContaining("vfiovm.dev/uid-audit");
  }
}
