"""DPS emulator: the device registration API over mutual TLS, with custom allocation webhooks.

Devices register as with Azure's Device Provisioning Service (X.509 enrollment groups); each
registration calls the group's webhook like DPS does and creates the device on the assigned
IoT hub through the real azure-iot-hub SDK.
"""
