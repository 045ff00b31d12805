"""The DPS custom-allocation webhook contract as pydantic models.

What DPS sends and accepts: (docs/contracts.md, "The DPS custom allocation webhook").

Unknown keys are kept, not rejected: DPS adds fields to its records over time and a webhook
that failed on them would fail every device. What we rely on is validated strictly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from device_twin import InitialTwin
from policies.model import HubHostName

MAX_BODY_BYTES = 96 * 1024
"""DPS's maximum message size; anything larger did not come from DPS."""

RegistrationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-._:]{1,128}$")]
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$")]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True, frozen=True)


class ReprovisionPolicy(_Wire):
    update_hub_assignment: bool = Field(True, alias="updateHubAssignment")
    migrate_device_data: bool = Field(True, alias="migrateDeviceData")


class EnrollmentAttestation(_Wire):
    type: str | None = None


class EnrollmentRecord(_Wire):
    """An enrollmentGroup or individualEnrollment record, as DPS embeds it."""

    enrollment_group_id: str | None = Field(None, alias="enrollmentGroupId", max_length=128)
    registration_id: RegistrationId | None = Field(None, alias="registrationId")
    device_id: DeviceId | None = Field(None, alias="deviceId")
    attestation: EnrollmentAttestation | None = None
    reprovision_policy: ReprovisionPolicy | None = Field(None, alias="reprovisionPolicy")
    allocation_policy: str | None = Field(None, alias="allocationPolicy")
    iot_hubs: list[str] | None = Field(None, alias="iotHubs")


class TpmAttestation(_Wire):
    endorsement_key: str | None = Field(None, alias="endorsementKey")
    storage_root_key: str | None = Field(None, alias="storageRootKey")


class DeviceRuntimeContext(_Wire):
    registration_id: RegistrationId = Field(alias="registrationId")
    current_iot_hub_host_name: HubHostName | None = Field(
        None,
        validation_alias=AliasChoices("currentIotHubHostName", "currentIoTHubHostName"),
    )
    current_device_id: DeviceId | None = Field(None, alias="currentDeviceId")
    x509: dict[str, Any] | None = None
    symmetric_key: dict[str, Any] | None = Field(None, alias="symmetricKey")
    tpm: TpmAttestation | None = None
    payload: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_attestation(self) -> DeviceRuntimeContext:
        present = [
            name
            for name, value in (
                ("x509", self.x509),
                ("symmetricKey", self.symmetric_key),
                ("tpm", self.tpm),
            )
            if value is not None
        ]
        if len(present) > 1:
            raise ValueError(f"carries {' and '.join(present)}; DPS sends one attestation kind")
        return self

    @property
    def attestation_kind(self) -> Literal["x509", "symmetricKey", "tpm", "none"]:
        if self.x509 is not None:
            return "x509"
        if self.symmetric_key is not None:
            return "symmetricKey"
        if self.tpm is not None:
            return "tpm"
        return "none"


class AllocationRequest(_Wire):
    """The body DPS POSTs to the webhook."""

    enrollment_group: EnrollmentRecord | None = Field(None, alias="enrollmentGroup")
    individual_enrollment: EnrollmentRecord | None = Field(None, alias="individualEnrollment")
    device_runtime_context: DeviceRuntimeContext = Field(alias="deviceRuntimeContext")
    linked_hubs: list[HubHostName] = Field(alias="linkedHubs", min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_enrollment(self) -> AllocationRequest:
        if (self.enrollment_group is None) == (self.individual_enrollment is None):
            raise ValueError("exactly one of enrollmentGroup or individualEnrollment is required")
        return self

    @property
    def enrollment(self) -> EnrollmentRecord:
        record = self.enrollment_group or self.individual_enrollment
        assert record is not None  # guaranteed by _one_enrollment
        return record

    @property
    def is_reregistration(self) -> bool:
        return self.device_runtime_context.current_iot_hub_host_name is not None


class AllocationResponse(BaseModel):
    """What the webhook answers with 200. DPS fails the device (400208) without a hub."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    iot_hub_host_name: HubHostName = Field(alias="iotHubHostName")
    initial_twin: InitialTwin = Field(alias="initialTwin")
    payload: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
