//! Well-known AVP codes used by the gateway's own logic (typed accessors and builders).
//!
//! The dictionaries in `dictionaries/` remain the reference for validation and printing; these
//! constants only spare the hot path a name lookup. Each group cites where the code is defined.

use super::avp::AvpCode;

impl AvpCode {
    // RFC 6733 section 4.5 (base protocol).
    pub const USER_NAME: Self = Self(1);
    pub const CLASS: Self = Self(25);
    pub const SESSION_TIMEOUT: Self = Self(27);
    pub const PROXY_STATE: Self = Self(33);
    pub const ACCOUNTING_SESSION_ID: Self = Self(44);
    pub const ACCT_MULTI_SESSION_ID: Self = Self(50);
    pub const EVENT_TIMESTAMP: Self = Self(55);
    pub const ACCT_INTERIM_INTERVAL: Self = Self(85);
    pub const HOST_IP_ADDRESS: Self = Self(257);
    pub const AUTH_APPLICATION_ID: Self = Self(258);
    pub const ACCT_APPLICATION_ID: Self = Self(259);
    pub const VENDOR_SPECIFIC_APPLICATION_ID: Self = Self(260);
    pub const REDIRECT_HOST_USAGE: Self = Self(261);
    pub const REDIRECT_MAX_CACHE_TIME: Self = Self(262);
    pub const SESSION_ID: Self = Self(263);
    pub const ORIGIN_HOST: Self = Self(264);
    pub const SUPPORTED_VENDOR_ID: Self = Self(265);
    pub const VENDOR_ID: Self = Self(266);
    pub const FIRMWARE_REVISION: Self = Self(267);
    pub const RESULT_CODE: Self = Self(268);
    pub const PRODUCT_NAME: Self = Self(269);
    pub const SESSION_BINDING: Self = Self(270);
    pub const SESSION_SERVER_FAILOVER: Self = Self(271);
    pub const MULTI_ROUND_TIME_OUT: Self = Self(272);
    pub const DISCONNECT_CAUSE: Self = Self(273);
    pub const AUTH_REQUEST_TYPE: Self = Self(274);
    pub const AUTH_GRACE_PERIOD: Self = Self(276);
    pub const AUTH_SESSION_STATE: Self = Self(277);
    pub const ORIGIN_STATE_ID: Self = Self(278);
    pub const FAILED_AVP: Self = Self(279);
    pub const PROXY_HOST: Self = Self(280);
    pub const ERROR_MESSAGE: Self = Self(281);
    pub const ROUTE_RECORD: Self = Self(282);
    pub const DESTINATION_REALM: Self = Self(283);
    pub const PROXY_INFO: Self = Self(284);
    pub const RE_AUTH_REQUEST_TYPE: Self = Self(285);
    pub const ACCOUNTING_SUB_SESSION_ID: Self = Self(287);
    pub const AUTHORIZATION_LIFETIME: Self = Self(291);
    pub const REDIRECT_HOST: Self = Self(292);
    pub const DESTINATION_HOST: Self = Self(293);
    pub const ERROR_REPORTING_HOST: Self = Self(294);
    pub const TERMINATION_CAUSE: Self = Self(295);
    pub const ORIGIN_REALM: Self = Self(296);
    pub const EXPERIMENTAL_RESULT: Self = Self(297);
    pub const EXPERIMENTAL_RESULT_CODE: Self = Self(298);
    pub const INBAND_SECURITY_ID: Self = Self(299);
    pub const ACCOUNTING_RECORD_TYPE: Self = Self(480);
    pub const ACCOUNTING_REALTIME_REQUIRED: Self = Self(483);
    pub const ACCOUNTING_RECORD_NUMBER: Self = Self(485);

    // RFC 4006 / RFC 8506 section 8 (credit-control).
    pub const CC_CORRELATION_ID: Self = Self(411);
    pub const CC_INPUT_OCTETS: Self = Self(412);
    pub const CC_MONEY: Self = Self(413);
    pub const CC_OUTPUT_OCTETS: Self = Self(414);
    pub const CC_REQUEST_NUMBER: Self = Self(415);
    pub const CC_REQUEST_TYPE: Self = Self(416);
    pub const CC_SERVICE_SPECIFIC_UNITS: Self = Self(417);
    pub const CC_SESSION_FAILOVER: Self = Self(418);
    pub const CC_SUB_SESSION_ID: Self = Self(419);
    pub const CC_TIME: Self = Self(420);
    pub const CC_TOTAL_OCTETS: Self = Self(421);
    pub const CHECK_BALANCE_RESULT: Self = Self(422);
    pub const COST_INFORMATION: Self = Self(423);
    pub const COST_UNIT: Self = Self(424);
    pub const CURRENCY_CODE: Self = Self(425);
    pub const CREDIT_CONTROL: Self = Self(426);
    pub const CREDIT_CONTROL_FAILURE_HANDLING: Self = Self(427);
    pub const DIRECT_DEBITING_FAILURE_HANDLING: Self = Self(428);
    pub const EXPONENT: Self = Self(429);
    pub const FINAL_UNIT_INDICATION: Self = Self(430);
    pub const GRANTED_SERVICE_UNIT: Self = Self(431);
    pub const RATING_GROUP: Self = Self(432);
    pub const REDIRECT_ADDRESS_TYPE: Self = Self(433);
    pub const REDIRECT_SERVER: Self = Self(434);
    pub const REDIRECT_SERVER_ADDRESS: Self = Self(435);
    pub const REQUESTED_ACTION: Self = Self(436);
    pub const REQUESTED_SERVICE_UNIT: Self = Self(437);
    pub const RESTRICTION_FILTER_RULE: Self = Self(438);
    pub const SERVICE_IDENTIFIER: Self = Self(439);
    pub const SERVICE_PARAMETER_INFO: Self = Self(440);
    pub const SERVICE_PARAMETER_TYPE: Self = Self(441);
    pub const SERVICE_PARAMETER_VALUE: Self = Self(442);
    pub const SUBSCRIPTION_ID: Self = Self(443);
    pub const SUBSCRIPTION_ID_DATA: Self = Self(444);
    pub const UNIT_VALUE: Self = Self(445);
    pub const USED_SERVICE_UNIT: Self = Self(446);
    pub const VALUE_DIGITS: Self = Self(447);
    pub const VALIDITY_TIME: Self = Self(448);
    pub const FINAL_UNIT_ACTION: Self = Self(449);
    pub const SUBSCRIPTION_ID_TYPE: Self = Self(450);
    pub const TARIFF_TIME_CHANGE: Self = Self(451);
    pub const TARIFF_CHANGE_USAGE: Self = Self(452);
    pub const G_S_U_POOL_IDENTIFIER: Self = Self(453);
    pub const CC_UNIT_TYPE: Self = Self(454);
    pub const MULTIPLE_SERVICES_INDICATOR: Self = Self(455);
    pub const MULTIPLE_SERVICES_CREDIT_CONTROL: Self = Self(456);
    pub const G_S_U_POOL_REFERENCE: Self = Self(457);
    pub const USER_EQUIPMENT_INFO: Self = Self(458);
    pub const USER_EQUIPMENT_INFO_TYPE: Self = Self(459);
    pub const USER_EQUIPMENT_INFO_VALUE: Self = Self(460);
    pub const SERVICE_CONTEXT_ID: Self = Self(461);

    // 3GPP TS 32.299 (vendor 10415).
    pub const TGPP_CHARGING_ID: Self = Self(2);
    pub const REPORTING_REASON: Self = Self(872);
    pub const SERVICE_INFORMATION: Self = Self(873);
    pub const PS_INFORMATION: Self = Self(874);
    pub const IMS_INFORMATION: Self = Self(876);
    pub const MMS_INFORMATION: Self = Self(877);
    pub const TRIGGER_TYPE: Self = Self(870);
    pub const TRIGGER: Self = Self(1264);
    pub const SMS_INFORMATION: Self = Self(2000);
}
