package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonPropertyDescription;

/**
 * Schema of one status condition, only so the CRD documents its fields (`kubectl explain
 * vfiovm.status.conditions`); the status itself holds fabric8's {@link io.fabric8.kubernetes.api.model.Condition}.
 */
public final class ConditionSchema {
  @JsonPropertyDescription("UidAssigned, Placed, MemlockLimited, DmaMapped or Ready.")
  public String type;

  @JsonPropertyDescription("True, False or Unknown.")
  public String status;

  @JsonPropertyDescription("One CamelCase word for why (e.g. InsufficientBudget, DeviceConflict, ENOMEM).")
  public String reason;

  @JsonPropertyDescription("What happened and, when it is not True, what to change.")
  public String message;

  @JsonPropertyDescription("When status last changed (RFC 3339).")
  public String lastTransitionTime;

  @JsonPropertyDescription("metadata.generation of the spec the condition describes.")
  public Long observedGeneration;

  private ConditionSchema() {}
}
